-- An archive is read in storage order across a service's nodes (an account's conversations,
-- page by page) and trimmed from its oldest end: find a service's items by seq.
CREATE INDEX pubsub_items_by_service ON pubsub_items (service, seq);
