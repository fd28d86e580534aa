"""External auditors: compliance grants one read access for an engagement and a period that ends; while it lasts
the auditor reads evidence, history and exports, changes nothing, and every page they open is logged."""
