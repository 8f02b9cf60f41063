"""Notifications: events into an outbox (``notifier.Notifier``, in the root agent), delivered
by a job of ``healer serve`` (``outbox.OutboxDeliverer.deliver_due``) to Slack, a signed JSON
webhook, and the log (``channels``). Import the modules themselves: this package imports
nothing, so the agent, which only enqueues, never loads the HTTP client of the channels."""
