"""The foundation: vocabularies and lifecycles that every domain shares; it imports no domain."""
