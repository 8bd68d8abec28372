"""Reads a whole OData entity set through @odata.nextLink on one keep-alive
connection, as Power BI does, and prints rows, pages and rows per second.
The client only finds the next link and counts rows (it does not build
objects), so the figure is the server's.
Usage: python3 bench/odata_read_all.py URL TOKEN [PAGE_ROWS]"""
import http.client
import sys
import time
import urllib.parse

url, token = sys.argv[1], sys.argv[2]
page_rows = sys.argv[3] if len(sys.argv) > 3 else "20000"
parts = urllib.parse.urlsplit(url)
connection = http.client.HTTPConnection(parts.hostname, parts.port)
headers = {"Authorization": f"Bearer {token}", "Prefer": f"odata.maxpagesize={page_rows}",
           "OData-MaxVersion": "4.0", "Accept": "application/json;odata.metadata=minimal"}
path = parts.path + ("?" + parts.query if parts.query else "")
rows = pages = size = 0
started = time.perf_counter()
while path:
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"{response.status} on {path}: {body[:300]!r}")
    pages += 1
    size += len(body)
    # One object per row: count the rows by their opening braces after "value".
    value = body.index(b'"value":[')
    tail = body.rfind(b'"@odata.nextLink":"')
    rows += body.count(b'{', value, tail if tail > 0 else len(body))
    if tail > 0:
        link = body[tail + len('"@odata.nextLink":"'):body.rindex(b'"')].decode()
        path = urllib.parse.urlsplit(link)._replace(scheme="", netloc="").geturl()
    else:
        path = None
seconds = time.perf_counter() - started
print(f"{rows} rows in {pages} pages, {size / 1e6:.0f} MB, {seconds:.2f} s: {rows / seconds:,.0f} rows/s")
