"""Run records and the files written from them: results.json, junit.xml, summary.txt, report.html,
plots.
"""
