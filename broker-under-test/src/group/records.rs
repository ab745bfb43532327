//! `__consumer_offsets` record keys and values in Kafka's own formats.
