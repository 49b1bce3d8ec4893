"""The `ui` node: a web page for picking the focal plane of a captured burst (server, graph bridge,
static assets). The page talks to the server over HTTP and one WebSocket; the server talks to the
ROS graph through the `GraphPort` that `ui_node.UiNode` implements."""
