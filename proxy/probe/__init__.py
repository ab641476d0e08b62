"""Host probing: runs on client machines (`hostfit probe`), so it imports only the
pure core, never the server stack."""
