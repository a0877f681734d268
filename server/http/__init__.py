"""The HTTP edge (Starlette): carrier webhooks (`sms`), tracked-link redirects, the Slack route
(`slack`), health; one bounded body reader for all of them (`edge`)."""
