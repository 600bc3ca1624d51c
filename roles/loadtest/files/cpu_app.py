"""A WSGI app that only runs Python: the same work under uWSGI and under gunicorn tells how
fast each runs the interpreter itself, before any framework, database or cache."""


def application(environ, start_response):
    body = str(sum(i * i for i in range(100_000))).encode()
    # With a length, no client has to wait for the close to know the answer is whole.
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
