"""The two gRPC services, thin: parse a request, call one room, reply."""
