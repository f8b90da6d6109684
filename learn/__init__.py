"""S4S and S4S-Alt learning."""
