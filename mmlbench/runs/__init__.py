"""One config's life in the store: built, checked, claimed, resumed, trained alone or in a group, written, re-scored."""
