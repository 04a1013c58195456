"""The Gradio app (filled in by the app issue)."""
