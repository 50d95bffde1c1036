"""The synthetic phantom: anatomy, shapes, rendering and files with known geometry."""
