"""Release gates: judge a candidate version against a Release spec (`gates`), collect
approvals, and move the champion alias only when the latest check of that very version passed
(`actions`). Every check, approval, promotion and rollback is an audit event."""
