from rideflow.cli import main

main()
