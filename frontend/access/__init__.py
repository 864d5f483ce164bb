"""Who comes in: sign-in and the hold on a name, the browser's signed id, the code guard, the connection's origin."""
