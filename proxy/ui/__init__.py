"""HTML for people: the landing page, a project as one host sees it, a wheel's report.

Pure rendering: plain values in, a complete HTML document out, no I/O and no clock
(the edge gathers the data, `proxy.edge.ui`). Every string that came from an upstream,
a report or a request is escaped where it is written (`proxy.ui.base.e`), and the pages
carry no script at all, so they work with JavaScript off and under a strict
Content-Security-Policy. No external assets: the style sheet is inline, so the pages
render the same in an air-gapped network.
"""
