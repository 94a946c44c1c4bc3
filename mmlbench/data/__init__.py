"""Getting interaction data in: registry, download, preprocessing, loading."""
