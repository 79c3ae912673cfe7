"""Generation: the midtraining corpus (`documents.run_documents`) and SFT chats (`chats.run_chats`)."""
