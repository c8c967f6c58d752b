from datafactory.cli import main

raise SystemExit(main())
