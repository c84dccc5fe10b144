"""The position-keeper: positions and account state rebuilt exactly from the durable exec stream."""
