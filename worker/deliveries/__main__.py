"""`python -m worker.deliveries` (worker/app.py starts it): see process.py."""

from worker.deliveries.process import main

main()
