"""The framework's floor: a Flask app whose one endpoint answers a constant JSON document.

Served by gunicorn exactly as kindstride is (`gunicorn kindstride.bench.constant_app:app -w 2`), it shows what
a request costs before any of kindstride's work: the ratio of the leaderboard's figures to this one's says how
close to the floor the leaderboard is.
"""

from flask import Flask

app = Flask(__name__)
BODY = {"rank": 1, "bib": 1, "score": 0}


@app.get("/constant")
def constant():
    return BODY
