"""The backplane: everything replicas share (values, locks, wake-ups), behind one interface."""
