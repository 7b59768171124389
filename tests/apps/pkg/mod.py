def app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [__name__.encode()]
