"""The sizer: intents in, sized orders (or refusals) out. Stateless; scale by replicas on one consumer."""
