"""Substrate adapters: the local durable runner and its stores (``.local``), Temporal
(``.temporal``), models (``.llm``), the HTTP API (``.http``) and what they share."""
