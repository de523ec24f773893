"""How camcap is reached: `camcap.server.app.create_app(settings)` builds the app; one module per
route family (http, websocket, page) and `messages` is the wire schema."""
