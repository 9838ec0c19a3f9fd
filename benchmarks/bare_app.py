"""The baseline for benchmarks/webhook.py: a Flask endpoint that reads the body and
answers 202, served by the same gunicorn settings as the webhook."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hooks")
def receive():
    request.get_data()
    return jsonify(pipeline_id="none"), 202
