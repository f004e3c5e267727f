"""Kafka SASL token providers: OAUTHBEARER from an OIDC token endpoint and AWS MSK IAM."""
