"""Multi-view depth CNN (trained here), depth node, point clouds and 3D model export for dfocus."""
