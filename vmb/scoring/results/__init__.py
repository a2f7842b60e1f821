"""The results page (`tools/results.py SUBMISSION_DIR... --reference FILE -o SITE`, `vmb-results`): one static
site from many submission folders, readable offline from file:// URLs.

A submission folder is untrusted input. Before anything reads a file of it, `vmb.scoring.package.intake_reasons` checks
that it holds only plain files and folders (a symbolic link, a FIFO or a device makes it invalid, and nothing
behind it is read) and that every file is within its size cap; only then does the scorer check its manifest and
its runs (`submission.assess_submission`, the one call into the scorer). Every string taken from a submission is
HTML-escaped in the site and guarded against formula injection in the CSV.

- `submission`: one submission folder: the intake checks, the scorer's verdict, and its rows of the table;
- `page`: index.html: the ranked table (sortable by a small inline script), the "Not ranked" table, inline CSS,
  and a Content-Security-Policy that lets only that script and that stylesheet run;
- `site`: the site as a whole: index.html, results.csv, and submissions/<name>/report.html (vmb.scoring.report)
  for every submission the scorer assessed.
"""
