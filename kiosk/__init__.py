"""The patient-facing check-in kiosk (served at ``/kiosk/``)."""
