"""Registration, all-in-focus fusion, thin-lens bokeh, refocus action, live preview and web UI for dfocus."""
