"""Daily reconciliation of the providers' bills: runs, mismatches, the job (issue 12, 7)."""
