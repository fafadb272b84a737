"""The domain: plain functions over models. No request, no session, no templates."""
