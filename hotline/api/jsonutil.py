"""JSON responses that keep Chinese text readable (no \\u escapes)."""

import functools
import json

from aiohttp import web

dumps = functools.partial(json.dumps, ensure_ascii=False)
json_response = functools.partial(web.json_response, dumps=dumps)
