"""The command line as typer reads it: one module per command group, put together in the order `jitaku --help`
lists them. main() (jitaku.cli) runs it, and loads it only for a command other than a plain `jitaku serve`."""

from __future__ import annotations

import typer

from jitaku.cli import (
    blog,
    cert,
    db,
    ddns,
    dkim,
    dns,
    filters,
    ha,
    health,
    init,
    lists,
    mailbox,
    queue,
    serve,
    smart,
    users,
    web,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="jitaku (自宅): a home server that keeps running.",
)
app.command("init")(init.init)
app.command("serve")(serve.serve)
app.command("check")(health.check)
app.add_typer(users.user_app, name="user")
app.add_typer(users.alias_app, name="alias")
app.add_typer(mailbox.mailbox_app, name="mailbox")
app.add_typer(queue.queue_app, name="queue")
app.add_typer(dkim.dkim_app, name="dkim")
app.add_typer(lists.list_app, name="list")
app.add_typer(smart.smart_app, name="smart")
app.add_typer(ddns.ddns_app, name="ddns")
app.add_typer(dns.dns_app, name="dns")
app.add_typer(cert.cert_app, name="cert")
app.add_typer(health.alerts_app, name="alerts")
app.add_typer(blog.blog_app, name="blog")
app.add_typer(web.web_app, name="web")
app.add_typer(filters.filter_app, name="filter")
app.add_typer(db.db_app, name="db")
app.add_typer(ha.standby_app, name="standby")
app.add_typer(ha.ha_app, name="ha")
app.command("failover")(ha.failover)
app.command("switchover")(ha.switchover)
