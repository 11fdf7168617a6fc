"""The OpenAPI 3 document for the HTTP API. Tests check it against the router and run
schemathesis against a live app, so it cannot drift from the code unnoticed."""

from __future__ import annotations

from typing import Any

from ldmscan import __version__
from ldmscan.attribution import LATENT_SPACES
from ldmscan.verdict import Label, Strength

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "verdict": {"$ref": "#/components/schemas/Verdict"},
    },
}

EVIDENCE = {
    "type": "object",
    "required": ["kind", "detail", "strength", "says_generated"],
    "properties": {
        "kind": {"type": "string"},
        "detail": {"type": "string"},
        "strength": {"type": "string", "enum": [s.value for s in Strength]},
        "says_generated": {"type": "boolean"},
    },
}

ATTRIBUTION = {
    "type": "object",
    "required": ["guess", "name", "probability", "probabilities"],
    "properties": {
        "guess": {"type": "string", "enum": list(LATENT_SPACES)},
        "name": {"type": "string", "description": "the latent space as a moderator reads it"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "probabilities": {
            "type": "object",
            "description": "every class of the detector's attribution head",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
}

VERDICT = {
    "type": "object",
    "required": [
        "sha256",
        "label",
        "score",
        "reasons",
        "detector",
        "tries",
        "crop_scores",
        "evidence",
        "timings",
        "error",
        "attribution",
    ],
    "properties": {
        "sha256": {"type": ["string", "null"]},
        "label": {"type": "string", "enum": [label.value for label in Label]},
        "score": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "detector": {
            "type": ["object", "null"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "sha256": {"type": "string"},
            },
        },
        "tries": {"type": "integer"},
        "crop_scores": {"type": "array", "items": {"type": "number"}},
        "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "error": {"type": ["string", "null"]},
        "error_code": {
            "type": ["string", "null"],
            "description": "for error verdicts: not_an_image, too_many_pixels, image_too_small, "
            "too_large or unreadable",
        },
        "attribution": {
            "description": "which latent space (autoencoder family) the detector guesses made "
            "the image; null when the pixel score says real, the detector has no attribution "
            "head, or no guess reaches its calibrated confidence",
            "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Attribution"}],
        },
        "image": {
            "type": ["object", "null"],
            "properties": {
                "sha256": {"type": "string"},
                "size_bytes": {"type": "integer"},
                "width": {"type": ["integer", "null"]},
                "height": {"type": ["integer", "null"]},
                "format": {"type": ["string", "null"]},
                "mode": {"type": ["string", "null"]},
                "frames": {"type": ["integer", "null"]},
            },
        },
    },
}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad request",
        401: "missing or wrong bearer token",
        404: "not found",
        408: "the request body did not arrive before --timeout",
        413: "body over the size limit (refused on Content-Length before reading)",
        422: "not an image, broken, too small or too big",
        429: "queue full; see Retry-After",
        500: "a server bug; the JSON error shape all the same, and logged",
        504: "no verdict in time",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ldmscan",
            "version": __version__,
            "description": "Detect images made by latent diffusion models. URLs sent as "
            "context are stored, never fetched.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": ERROR,
                "Verdict": VERDICT,
                "Evidence": EVIDENCE,
                "Attribution": ATTRIBUTION,
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/check": {
                "post": {
                    "operationId": "check",
                    "summary": "Score one image (raw body or multipart `file`)",
                    "parameters": [
                        {
                            "name": "page_url",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "image_url",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "file": {"type": "string", "format": "binary"},
                                        "page_url": {"type": "string"},
                                        "image_url": {"type": "string"},
                                    },
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "verdict",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Verdict"}
                                }
                            },
                        },
                        **_error_responses(400, 401, 408, 413, 422, 429, 500, 504),
                    },
                }
            },
            "/v1/verdicts/{sha256}": {
                "get": {
                    "operationId": "getVerdicts",
                    "summary": "Stored verdicts, locations and image facts for one sha256",
                    "parameters": [
                        {
                            "name": "sha256",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "history",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["sha256", "image", "verdicts", "locations"],
                                        "properties": {
                                            "sha256": {"type": "string"},
                                            "image": {"type": "object"},
                                            "verdicts": {
                                                "type": "array",
                                                "items": {"type": "object"},
                                            },
                                            "locations": {
                                                "type": "array",
                                                "items": {"type": "object"},
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **_error_responses(400, 401, 404),
                    },
                }
            },
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness, detector and queue",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status", "detector"],
                                        "properties": {
                                            "status": {"const": "ok"},
                                            "detector": {"type": "object"},
                                        },
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
