"""edgetune's federation: FedAvg over the classifier head, with browsers as the nodes."""
