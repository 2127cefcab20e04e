"""The Streamlit chat for staff: `streamlit run ui/app.py` (the quickstart starts it)."""
