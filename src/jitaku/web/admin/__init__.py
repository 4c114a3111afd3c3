"""The owner's admin under /admin/: each part (posts, comments, redirects, lists, queue) a module with its own
routes, every page drawn on templates/admin/base.html by page.render, every route behind auth.Gate."""
