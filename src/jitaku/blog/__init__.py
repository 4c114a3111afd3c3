"""The blog: posts written as Markdown files with front matter, imported into the store (`jitaku blog import`),
and the URLs they are published under, which must never break (issue 21)."""
