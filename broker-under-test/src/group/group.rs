//! One classic group: members, generation and Kafka's state machine.
