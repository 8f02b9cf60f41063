"""One router per resource; ``web.app.create_app`` includes them all."""
