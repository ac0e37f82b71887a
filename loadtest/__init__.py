"""The cohort load test (issue 8): a whole cohort of candidates driven through real server processes
the way WeChat drives them. `make loadtest`, or `.venv/bin/python -m loadtest --help`."""
