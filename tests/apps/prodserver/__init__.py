"""A stand-in for django-prodserver (not packaged in Debian): its
`prodserver` command and its Granian backends, which turn the string ARGS
of PRODUCTION_PROCESSES into Granian(...) keywords the way django-prodserver
3.0 does, then call serve()."""
