"""What the comment form and its pages say to a reader, in the blog's language (`[blog] language`, keyed as the
site's own table in web/site.py is: "ja" or "en", English for any other). In Japanese each says the English
beside it, as the form's labels always did: a reader from abroad can still fill the form in and read why it
was not saved. Kept apart from web/site.py, which imports this module's user (web/comments.py) for its types."""

from __future__ import annotations

# key: (Japanese, English); {name} fields are filled in by the caller, the same in both
_TEXT = {
    "heading": ("コメント", "Comments"),
    "reply": ("返信する", "Reply"),
    "write": ("コメントを書く", "Write a comment"),
    "write_reply": ("返信を書く", "Reply"),
    "name": ("名前", "Name"),
    "email": ("メール（表示されません）", "Email, never shown"),
    "url": ("ウェブサイト（任意）", "Website, optional"),
    "body": ("コメント", "Comment: *emphasis*, `code`, [links](https://…), lists, > quotes"),
    "send": ("送信", "Send"),
    "back": ("← 記事に戻る", "← Back to the post"),
    "saved": ("保存しました", "Saved"),
    "held": (
        "コメントを保存しました。管理者が承認すると表示されます。",
        "Your comment is saved and held for moderation: it appears once the owner approves it.",
    ),
    "not_saved": ("保存されませんでした", "Not saved"),
    "no_post": ("コメントできる記事がありません", "No such post"),
    "no_post_here": ("ここにはコメントできる記事がありません。", "There is no post here to comment on."),
    "too_large": (
        "コメントが長すぎます（{limit:,} バイトまで）。短くしてください。",
        "The comment is longer than this site takes ({limit:,} bytes). Please shorten it.",
    ),
    "bad_length": ("Content-Length が数値ではありません。", "The request's Content-Length is not a number."),
    "bad_kind": ("記事のページのフォームから送ってください。", "Send the comment with the form on the post's page."),
    "bad_utf8": ("コメントが正しい UTF-8 のテキストではありません。", "The comment is not valid UTF-8 text."),
    "automated": (
        "自動送信のようなので保存しませんでした。",
        "This comment looks automated, so it was not saved.",
    ),
    "no_name": ("名前を入れてください。", "Please give your name."),
    "long_name": ("名前は {limit} 文字までの1行です。", "A name is one line of at most {limit} characters."),
    "bad_email": (
        "name@example.com のようなメールアドレスを入れてください（表示されません）。",
        "Please give a plain email address like name@example.com (it is never shown).",
    ),
    "bad_url": (
        "ウェブサイトは http:// か https:// の URL です（空欄でもかまいません）。",
        "A website is an http:// or https:// URL (or leave it empty).",
    ),
    "url_spaces": ("ウェブサイトの URL に空白は入れられません。", "A website's URL has no spaces."),
    "empty": ("コメントが空です。", "The comment is empty."),
    "control": (
        "コメントに制御文字が入っています。普通のテキストで送ってください。",
        "The comment has control characters; please send plain text.",
    ),
    "no_parent": ("返信先のコメントがここにありません。", "That reply is to no comment here."),
    "sent_already": (
        "このフォームは送信済みです。もう一度書くには記事のページを開き直してください。",
        "This form was sent already. Open the post's page again to write another.",
    ),
    "too_many": (
        "このアドレスからのコメントが多すぎます（{minutes} 分に {limit} 件まで）。",
        "Too many comments from your address: at most {limit} in {minutes} minutes.",
    ),
    "no_token": (
        "ブラウザーがコメント用のトークンを送りませんでした。このサイトの Cookie を有効にして記事のページを"
        "開き直してから送ってください。",
        "Your browser sent no comment token. Open the post's page again (with cookies on for this site),"
        " then send your comment.",
    ),
    "bad_token": (
        "コメント用のトークンが正しくありません。記事のページを開き直してから送ってください。",
        "Your comment token is not valid. Open the post's page again, then send your comment.",
    ),
    "old_token": (
        "ページを開いてから1日以上たちました。記事のページを開き直してから送ってください。",
        "The page was open too long (a day). Open the post's page again, then send it.",
    ),
    "fast_token": (
        "送信が早すぎます。数秒待ってからもう一度送ってください。",
        "That was sent very fast. Wait a few seconds, then send your comment again.",
    ),
    # the owner's pages, from the approve and spam links of the mail
    "not_found": ("見つかりません", "Not found"),
    "nothing_here": ("ここには何もありません。", "There is nothing here."),
    "link_invalid": ("リンクが無効です", "Link not valid"),
    "link_invalid_why": (
        "このリンクは無効か期限切れです。サーバーで `jitaku blog comments` を使ってください。",
        "This link is not valid or has expired; use `jitaku blog comments` on the server.",
    ),
    "no_comment": ("コメントがありません", "No such comment"),
    "deleted": ("このコメントは削除されました。", "This comment was deleted."),
    "approve": ("承認する", "Approve"),
    "spam": ("スパムにする", "Mark as spam"),
    "confirm": ("コメント {id}", "comment {id}"),
    "wrote": ("{author} さんが {url} に書きました: {body}", "{author} wrote on {url}: {body}"),
    "done": ("完了", "Done"),
    "now_published": ("コメント {id} を公開しました。", "Comment {id} is published."),
    "now_spam": ("コメント {id} をスパムにして隠しました。", "Comment {id} is marked as spam and hidden."),
    "decided": ("処理済みです", "Decided already"),
    "was_published": (
        "コメント {id} は公開済みです。このリンクではもう何も変わりません。変えるにはサーバーで"
        " `jitaku blog comments` を使ってください。",
        "Comment {id} is published already; this link changes nothing now."
        " To change it, use `jitaku blog comments` on the server.",
    ),
    "was_spam": (
        "コメント {id} はスパムにしてあります。このリンクではもう何も変わりません。変えるにはサーバーで"
        " `jitaku blog comments` を使ってください。",
        "Comment {id} is marked as spam already; this link changes nothing now."
        " To change it, use `jitaku blog comments` on the server.",
    ),
}

WORDS = {
    "ja": {key: f"{ja} ({en})" for key, (ja, en) in _TEXT.items()},
    "en": {key: en for key, (_ja, en) in _TEXT.items()},
}
ENGLISH = WORDS["en"]


def alone(key: str, language: str) -> str:
    """KEY's text in LANGUAGE only, without the English beside it: a feed's title, which names the site's
    language to the reader's app."""
    ja, en = _TEXT[key]
    return ja if language.split("-")[0].lower() == "ja" else en


def words(language: str) -> dict[str, str]:
    """The table for LANGUAGE, a `[blog] language` tag such as "ja" or "en-GB"."""
    return WORDS.get(language.split("-")[0].lower(), ENGLISH)
