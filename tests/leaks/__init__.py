"""No token, refresh token, client secret or password in logs, errors, reprs or responses."""
