from evidence_verifier.cli import main

raise SystemExit(main())
