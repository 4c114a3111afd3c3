"""The tables: every durable thing lives here, message bodies included: a backup or a replica copies one thing."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("admin", Boolean, nullable=False, default=False, server_default=false()),  # may open the dashboard
    # a web session holds the value it was opened with; one more ends them all (log out, new password, revoke)
    Column("session_generation", Integer, nullable=False, default=0, server_default="0"),
)

# One row; bumped by every change to users, aliases, lists (see accounts.Directory) or the filters' allow and
# block lists (mail/filters/rulebook.py).
directory_version = Table(
    "directory_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("alias", String(320), primary_key=True),
    Column("target", String(320), nullable=False),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("uidvalidity", Integer, nullable=False),
    Column("uidnext", Integer, nullable=False, default=1),
    Column("special_use", String(16), nullable=True),  # RFC 6154: \Sent, \Drafts, \Trash, \Junk, \Archive
    # RFC 7162: at least every message's modseq; moves on with each change of flags, arrival and expunge
    Column("highestmodseq", Integer, nullable=False, default=1, server_default="1"),
    # RFC 3501 §2.3.2: messages from this UID on are \Recent; the next session to SELECT claims them
    Column("recent_uid", Integer, nullable=False, default=1, server_default="1"),
    UniqueConstraint("user_id", "name"),
)

# The names each user subscribed to (LSUB, LIST (SUBSCRIBED)), whether a mailbox has them or not: RFC 3501 §6.3.6
# keeps a subscription when its mailbox is deleted, and a deleted mailbox is shown subscribed as \NonExistent
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    UniqueConstraint("user_id", "name"),
)

# One row: the last UIDVALIDITY given to any mailbox. A new one is the time, or one more than this when the
# clock has not moved on (or went back), so a mailbox deleted and made again never repeats one.
uidvalidity_clock = Table(
    "uidvalidity_clock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last", Integer, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("uid", Integer, nullable=False),
    Column("flags", Text, nullable=False, default=""),  # space-separated: \Seen $Junk
    Column("received_at", Float, nullable=False),
    Column("size", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("modseq", Integer, nullable=False, default=1, server_default="1"),  # RFC 7162: its flags' last change
    UniqueConstraint("mailbox_id", "uid"),
)
# What IMAP's SELECT, STORE, CHANGEDSINCE, LIST and STATUS read, without the table: in SQLite a column after
# the body (modseq) is reached through every overflow page of the body, and even one before it (size) costs a
# page of the table per message.
Index("messages_state", messages.c.mailbox_id, messages.c.uid, messages.c.modseq, messages.c.flags, messages.c.size)
# The messages changed since a mod-sequence, found by a seek: a session looks for them after every command
# (mailstore.changes), and through messages_state that read an entry for every message of the mailbox.
Index("messages_modseq", messages.c.mailbox_id, messages.c.modseq)

# The UIDs expunged from each mailbox, with the mod-sequence of their expunge: a session learns what went since
# it last looked from these rows, not by reading every UID left (mailstore.changes). Only the newest are kept
# (mailstore.EXPUNGED_WINDOW); the key serves both the read (modseq above a session's) and the pruning. A row
# of UID 0 marks where the record began for a mailbox that had mail before it (migration 0017).
expunged = Table(
    "expunged",
    metadata,
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("modseq", Integer, nullable=False),
    Column("uid", Integer, nullable=False),
    PrimaryKeyConstraint("mailbox_id", "modseq", "uid"),
    sqlite_with_rowid=False,
)

queue = Table(
    "queue",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sender", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_attempt", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("body", LargeBinary, nullable=False),
    # a list post's copies share the archived post's body rather than each holding one
    Column("post_id", Integer, ForeignKey("list_posts.id", ondelete="CASCADE"), nullable=True),
)
Index("queue_next_attempt", queue.c.next_attempt)

queue_recipients = Table(
    "queue_recipients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("queue_id", String(32), ForeignKey("queue.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("recipient", String(320), nullable=False),
    Column("last_error", Text, nullable=True),
    # A list member's own copy: its VERP envelope sender and the header lines only it carries
    Column("sender", String(320), nullable=True),
    Column("prefix", LargeBinary, nullable=True),
)

lists = Table(
    "lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("subject_tag", String(255), nullable=False),
    Column("reply_to", String(16), nullable=False),
    Column("dmarc", String(16), nullable=False),
    Column("owners", Text, nullable=False, default=""),  # comma-separated; empty: postmaster
    Column("last_number", Integer, nullable=False, default=0),
    Column("bounce_threshold", Float, nullable=False, default=5.0),
    Column("digest_last_number", Integer, nullable=False, default=0),  # the newest post sent in a digest
    Column("digest_sent_at", Float, nullable=False, default=0.0),  # 0: a digest is due now
    Column("secret", String(64), nullable=False),  # keys the one-click unsubscribe tokens
    Column("created_at", Float, nullable=False),
    # who reads the posts on the web: "public", "members" (after a one-time link mailed to them) or "none"
    Column("archive", String(16), nullable=False, server_default="public"),
)

list_members = Table(
    "list_members",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("self_copy", Boolean, nullable=False, default=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("digest", Boolean, nullable=False, default=False),  # posts come once a day, together
    Column("bounce_score", Float, nullable=False, default=0.0),
    Column("bounce_at", Float, nullable=True),  # the last bounce that counted (lists/scores.py)
    Column("disabled_reason", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("list_id", "address"),
)

# A receiving domain that refused a list's mail as a whole (its server's greeting, or every member
# alike): scored once for the domain, not against each member there.
list_refusals = Table(
    "list_refusals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(255), nullable=False),
    Column("score", Float, nullable=False),
    Column("refused_at", Float, nullable=True),  # the last refusal that counted
    UniqueConstraint("list_id", "domain"),
)

# Every post as it went out (before each member's own headers), for `list archive`, `# get N` and the web.
list_posts = Table(
    "list_posts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("posted_at", Float, nullable=False),
    Column("sender", String(320), nullable=False),
    Column("author", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("message_id", Text, nullable=True),  # without its angle brackets; None when the post had none
    Column("message_hash", String(64), nullable=True),  # its archive page's stable URL is made of it
    Column("parent_number", Integer, nullable=True),  # the post it answers (References, In-Reply-To)
    Column("thread_number", Integer, nullable=True),  # its thread's first post
    UniqueConstraint("list_id", "number"),
)
Index("list_posts_message_hash", list_posts.c.list_id, list_posts.c.message_hash)
Index("list_posts_message_id", list_posts.c.list_id, list_posts.c.message_id)
Index("list_posts_posted", list_posts.c.list_id, list_posts.c.posted_at)  # a month of the archive

# The one-time links that let a member of a list whose archive is "members" in: the SHA-256 of each token, so a
# copy of the database logs nobody in
archive_logins = Table(
    "archive_logins",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
)

# Held posts are numbered from counters' row "list_held", never from the table's own highest id: an id once
# given never names another post (a moderator's `list approve LIST 5` approves what was held as 5, or nothing)
list_held = Table(
    "list_held",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("sender", String(320), nullable=False),
    Column("author", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

# Mail for a list, committed with the SMTP transaction and handled by the list runner after the 250.
list_inbox = Table(
    "list_inbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),  # post, approved, rejected, request, owner, bounces
    Column("recipient", String(320), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("note", Text, nullable=True),  # a moderator's reason for rejecting
    Column("attempts", Integer, nullable=False, default=0),  # failed tries, each followed by a pause
    Column("next_try", Float, nullable=False, default=0.0),
    Column("body", LargeBinary, nullable=False),
)

# The runner that took an inbox item (a token of its own, and its node: the box and data directory it runs from)
# and until when no other may take it, by the database's clock (store/lists.py). Apart from the item's row: a
# lease taken or renewed writes this small row, not the post's
list_leases = Table(
    "list_leases",
    metadata,
    Column("item_id", Integer, ForeignKey("list_inbox.id", ondelete="CASCADE"), primary_key=True),
    Column("node", String(32), nullable=False),
    Column("token", String(32), nullable=False),
    Column("until", Float, nullable=False),
)

# Ids that must never be given twice, by name: the last one given (store/lists.py's held posts)
counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last", Integer, nullable=False),
)

list_confirmations = Table(
    "list_confirmations",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("action", String(16), nullable=False),  # subscribe, unsubscribe
    Column("created_at", Float, nullable=False),
)

# What the DDNS updater knows of each record, so a restart (or `jitaku ddns status`) starts from it.
ddns_state = Table(
    "ddns_state",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("family", Integer, primary_key=True),  # 4 or 6
    Column("provider", String(32), nullable=False),
    Column("config_key", String(64), nullable=False),  # changes with the credentials: a refusal is then retried
    Column("address", Text, nullable=True),  # our public address as last found
    Column("address_at", Float, nullable=True),
    Column("sent_address", Text, nullable=True),
    Column("sent_at", Float, nullable=True),
    Column("result", Text, nullable=True),  # the provider's last answer
    Column("published", Text, nullable=True),  # what the authoritative servers answer, comma-separated
    Column("published_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("fatal", Boolean, nullable=False, default=False),  # refused for good: no retry until config or --force
    Column("attempts", Integer, nullable=False, default=0),
    Column("retry_at", Float, nullable=False, default=0.0),
    Column("next_keepalive", Float, nullable=False, default=0.0),
)

# Every health check's result, kept a while for the dashboard's graphs.
health_results = Table(
    "health_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("check_name", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("state", Integer, nullable=False),  # 0 ok, 1 warning, 2 critical
    Column("sentence", Text, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON object name -> number
    Column("detail", Text, nullable=False),
)
Index("health_results_check_at", health_results.c.check_name, health_results.c.at)

# Per check, what was last alerted: a restart does not alert again for what the owner already knows.
health_status = Table(
    "health_status",
    metadata,
    Column("check_name", String(32), primary_key=True),
    Column("state", Integer, nullable=False),
    Column("detail", Text, nullable=False),
    Column("sentence", Text, nullable=False),
    Column("since", Float, nullable=False),
    Column("alerted_at", Float, nullable=False),
    # the last alert's kind and the [alerts] urls (numbers from 1, comma-separated) that did not take it yet
    Column("unsent_kind", String(16), nullable=False, default="", server_default=""),
    Column("unsent", Text, nullable=False, default="", server_default=""),
)

health_alerts = Table(
    "health_alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("check_name", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # problem, reminder, recovery, summary, test
    Column("state", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("delivered", Boolean, nullable=False),  # every target took it
)
Index("health_alerts_at", health_alerts.c.at)

tallies = Table(
    "tallies",
    metadata,
    Column("minute", Integer, primary_key=True),  # the minute's start, in seconds since the epoch
    Column("kind", String(32), primary_key=True),  # smtp_sessions, mail_in, mail_out
    Column("count", Integer, nullable=False),
)

# Each password check: it counts against its limits from its start and stays as a failure unless it succeeds
# (ratelimit.py), so parallel tries, SMTP worker processes and restarts all see the same count.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client", String(64), nullable=False),  # the address (an IPv6 client's /64)
    Column("login", String(320), nullable=False),  # the user name as given, lowercased
    Column("at", Float, nullable=False),
    # the password is still being checked: the try waits for its outcome before it counts as a failure
    Column("pending", Boolean, nullable=False, default=False, server_default=false()),
)
Index("login_attempts_client", login_attempts.c.client, login_attempts.c.login, login_attempts.c.at)
Index("login_attempts_at", login_attempts.c.at)

# The blog (issue 21). A post is keyed by its file's path in the directory `jitaku blog import` read, so that
# importing again updates it in place and keeps its id, which comments and media will refer to. Its URL is made
# at import from `[blog] permalink` and kept: the site finds a post by it, and a change (of slug, date or
# pattern) is seen by comparing, and leaves a redirect from the old one.
posts = Table(
    "posts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", String(1024), nullable=False, unique=True),  # relative to the directory imported, with /
    Column("url", String(1024), nullable=False, unique=True),  # a path of Unicode text: /2024/05/自宅サーバー/
    Column("title", Text, nullable=False),
    Column("slug", String(255), nullable=False),
    Column("published_at", Float, nullable=False),  # the front matter's date, a UTC timestamp
    Column("draft", Boolean, nullable=False),  # never shown, and its URL never counted as published
    Column("source", Text, nullable=False),  # the body's Markdown
    Column("html", Text, nullable=False),  # rendered at import; the owner's own, so not sanitized
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # "post", or "page" (About): a page has its own URL but is never on the home page, in an archive or a feed
    Column("kind", String(16), nullable=False, server_default="post"),
)
# The home page and the month archives: newest published posts first, from a date on
Index("posts_published", posts.c.draft, posts.c.published_at)

post_tags = Table(
    "post_tags",
    metadata,
    Column("post_id", Integer, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    Column("tag", String(255), nullable=False),  # as written, NFC: 自宅サーバー
    Column("position", Integer, nullable=False),  # the front matter's order: the first tag is the post's main one
    PrimaryKeyConstraint("post_id", "tag"),
)
Index("post_tags_tag", post_tags.c.tag, post_tags.c.post_id)  # a tag's archive

# Every URL ever published answers 301 to where its page is now. A redirect always points at a live URL: when
# a post moves again, the redirects to its old URL move with it (no chains), and a URL in use again drops its own.
redirects = Table(
    "redirects",
    metadata,
    Column("old_path", String(1024), primary_key=True),
    Column("new_path", String(1024), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Images and other files the posts show, in the database so that a backup and the standby carry them
media = Table(
    "media",
    metadata,
    Column("path", String(1024), primary_key=True),  # relative to the directory imported, as a post's
    Column("content_type", String(255), nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256, hex: an import again rewrites only what changed
    Column("size", BigInteger, nullable=False, server_default="0"),  # bytes, all parts together
    Column("updated_at", Float, nullable=False),
)

# A media file's bytes in parts of 256 KiB (store/blog.py MEDIA_PART), numbered N from 0: SQLite reads a whole
# value before substr() cuts it, so a video's part is read by its number, and a Range reads only what it covers.
media_parts = Table(
    "media_parts",
    metadata,
    Column("path", String(1024), nullable=False),  # media.path; no foreign key: see migration 0020
    Column("n", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("path", "n"),
)

# Readers' comments. BODY is what the reader wrote (a small Markdown subset), HTML its rendering sanitized by
# nh3; STATUS is "pending" (held for moderation), "published" or "spam". A reply's PARENT_ID is a top-level
# comment (replies nest one level). ADDRESS is the client's, for the per-address rate limit; NONCE is the form
# token's, unique, so that a replayed form stores nothing.
comments = Table(
    "comments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("post_id", Integer, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", Integer, ForeignKey("comments.id", ondelete="CASCADE"), nullable=True),
    Column("author", String(200), nullable=False),
    Column("email", String(320), nullable=False),  # never shown
    Column("url", String(2048), nullable=False),  # "" for none
    Column("body", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("address", String(64), nullable=False),
    Column("nonce", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),  # why a pending comment was held, for the admin
)
Index("comments_post", comments.c.post_id, comments.c.status, comments.c.created_at)  # a post's page
Index("comments_status", comments.c.status, comments.c.created_at)  # the pending list, the comments' feed
Index("comments_address", comments.c.address, comments.c.created_at)  # the rate limit

# One row, bumped by every change to the blog's tables: the running site drops its cached pages when it moves
# (a change made with the CLI reaches the site within 2 s, issue 21)
blog_version = Table(
    "blog_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

# Search (issue 22) lives in two tables migration 0021 makes and this metadata cannot describe: on SQLite, FTS5
# virtual tables with the trigram tokenizer, search_posts (rowid = posts.id) and search_list_posts (rowid =
# list_posts.id), each with the columns title and body; store/search.py reads and writes them.

# Spam and virus filters (issue 23). A rule's scope is "global", "domain" (owner: a domain of ours, for its
# recipients) or "user" (owner: an address); its action "allow" or "block"; its pattern a sender's address or a
# domain, which takes its subdomains too.
filter_rules = Table(
    "filter_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("owner", String(320), nullable=False),  # "" for global
    Column("action", String(16), nullable=False),
    Column("pattern", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("scope", "owner", "pattern"),
)

# Greylisting's triplets: the client's network (an IPv4 /24, an IPv6 /64), the envelope sender, the recipient
greylist = Table(
    "greylist",
    metadata,
    Column("client", String(64), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("passed", Boolean, nullable=False),
    PrimaryKeyConstraint("client", "sender", "recipient"),
)
Index("greylist_last_seen", greylist.c.last_seen)

# What the engines were taught, by the message's SHA-256: moving a message into Junk and out again teaches each
# class at most once
filter_learned = Table(
    "filter_learned",
    metadata,
    Column("digest", String(64), nullable=False),
    Column("spam", Boolean, nullable=False),
    Column("learned_at", Float, nullable=False),
    PrimaryKeyConstraint("digest", "spam"),
)

# What users taught the engines over IMAP and is not learned yet (store/training.py): an expunged message takes
# its item with it, so that a later message given the same id is never taught for it
filter_training = Table(
    "filter_training",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("spam", Boolean, nullable=False),
    # those that learned it already, and training.IF_CALLED_SPAM for ham only if our filter called it spam
    Column("engines", String(64), nullable=False, server_default=""),
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("due_at", Float, nullable=False),
)
Index("filter_training_due", filter_training.c.due_at)
Index("filter_training_message", filter_training.c.message_id)

# The data directory's secret files, sealed for the standby (jitaku.ha.secret_files; migration 0024): NAME is the
# file's path in the data directory, DIGEST an HMAC of its mode and bytes under a key only the pair has
secret_files = Table(
    "secret_files",
    metadata,
    Column("name", Text, primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
)
