"""What the model learned from (lesson 9): its training pictures drawn again, and the nearest to a picture."""
