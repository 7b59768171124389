"""Extra routes for test_http.py: response framing decided by the app."""
from urllib.parse import parse_qs


def app(environ, start_response):
    """/status?code=N[&stream=1][&cl=N][&body=TEXT][&hdr=name:value...]

    Answers status N with the given body (streamed from a generator when
    stream=1, else as a one-item list) and any extra headers."""
    q = parse_qs(environ["QUERY_STRING"])
    code = q.get("code", ["200"])[0]
    body = q.get("body", [""])[0].encode()
    headers = [("content-type", "text/plain")]
    if "cl" in q:
        headers.append(("content-length", q["cl"][0]))
    for h in q.get("hdr", []):
        k, v = h.split(":", 1)
        headers.append((k, v))
    start_response(code + " X", headers)
    if q.get("stream") == ["1"]:
        def gen():
            if body:
                yield body[:1]
                yield body[1:]
        return gen()
    return [body]
