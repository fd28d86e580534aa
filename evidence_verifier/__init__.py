"""Offline verification of the portal's evidence PDFs, for auditors: ``verify-evidence REPORT.pdf``.

Needs no database, no settings and nothing of the portal (an import rule keeps it so): only the PDF
and, to trust the signer, the certificate the organisation gave the auditor. It checks that the
signature is intact, valid and covers the whole file; that each attached file's SHA-256 is the one the
report prints; that the attached CSV reproduces the totals the report prints; and it shows the signer
certificate's SHA-256 fingerprint and the history chain head the report was made at.
"""
